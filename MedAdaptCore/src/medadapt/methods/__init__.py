"""The adaptation methods (LoRA with synthesis, FSEFT heads 2D/3D, atlas) and their registry."""
