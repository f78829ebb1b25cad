"""Importing this module warms the importing process up for running jobs (ades.jobs.launcher.warm_up: cwltool and
the sinks imported, the CWL schemas parsed).

It is the forkserver's preload (ades.jobs.local): the forkserver process warms up once, and every job worker forked
from it starts warm, in a fraction of a second instead of the seconds a fresh interpreter takes.
"""

from ades.jobs.launcher import warm_up

warm_up()
