"""Worker processes and BLAS threads for a training step, behind one interface."""
