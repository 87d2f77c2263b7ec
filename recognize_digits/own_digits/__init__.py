"""Your own digits: the folder format of labelled digits, augmentation, synthetic
sources of digits unlike MNIST's, user-like photos, and fine-tuning a model on them."""
