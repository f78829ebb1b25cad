"""One run of a deployed workflow under cwltool: the wrapper around it, the run itself, update-job steps in-process.
Nothing here knows of jobs' lives on a host (ades.jobs does)."""
