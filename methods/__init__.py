"""Editing-method plugins (baseline/EYE, HFLD, GANSpace, InterFaceGAN, SeFa): see docs/writing-a-method.md."""
