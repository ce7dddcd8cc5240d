"""Example models beyond digits, made offline with TensorFlow (run them in the training venv, .venv-train)."""
