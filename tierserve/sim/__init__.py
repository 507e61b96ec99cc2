"""tierserve simulate: a discrete-event simulator running the same policy/ functions as the
runtimes."""
