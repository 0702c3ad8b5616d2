"""Reading and writing what the user gives and gets: volumes and their geometry, painted exemplars, point
prompts, intensity windows, 3D grids."""
