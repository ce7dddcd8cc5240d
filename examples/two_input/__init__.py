"""A classifier with two named inputs: an 8x8 one-channel image (rank 4) and three numbers."""
