"""Running jobs: the workflow wrapper, the cwltool runner and the executors that host it."""
