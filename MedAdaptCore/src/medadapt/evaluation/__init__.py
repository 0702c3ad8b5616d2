"""Scoring segmentations (Dice, HD95) and drawing figures of them."""
