"""The life of a job on a host: accepted, journaled, waiting, queued, started, ended.

Data flows one way: `ades.api` -> `ades.jobs` -> `ades.execute` | `ades.store` | `ades.events`. Nothing here imports
the API, and nothing below imports this package. Kept free of imports so that `ades.jobs.groups` stays cheap for the
service launchers.
"""
