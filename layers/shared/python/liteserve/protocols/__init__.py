"""Protocol codecs: JSON documents <-> validated numpy batches, one module per protocol."""
