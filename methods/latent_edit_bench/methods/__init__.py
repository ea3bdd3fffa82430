"""Editing-method plugins (baseline/EYE, HFLD, GANSpace, InterFaceGAN, SeFa): see docs/methods.md."""
