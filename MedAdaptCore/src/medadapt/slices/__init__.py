"""Slice-by-slice segmentation: slice frames and the slice model, propagation from painted or seeded
slices, Fill between slices, leave-one-out checks and the between-slice policy, label assembly."""
