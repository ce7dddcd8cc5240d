"""A regression MLP on scikit-learn's bundled diabetes data, read from named CSV columns."""
