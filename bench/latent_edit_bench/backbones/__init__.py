"""Generator backbones: StyleGAN2 (pure PyTorch) and the embedded DigiFace DCGAN."""
