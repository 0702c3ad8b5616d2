"""Model lineages: one foundation model fine-tuned task after task (sequential fine-tuning, MedSeqFT), kept as
a checksummed delta on its base weights with the slices it retains and its per-task history."""
