"""Training on CIFAR-10 or an ImageFolder: data, augmentation, recipes, the loop, checkpoints, hardware."""
