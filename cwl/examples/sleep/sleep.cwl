#!/usr/bin/env cwl-runner
# Sleeps for a while: a job that is still running when a test (or a person) cancels it.
cwlVersion: v1.2
class: CommandLineTool
id: sleep
label: Sleep
doc: Sleeps for `seconds` seconds, then writes "slept".
baseCommand: [sh, -c]
arguments:
  - 'sleep "$0" && echo slept'
  - $(inputs.seconds)
inputs:
  seconds:
    type: int
    default: 300
    doc: How long to sleep.
outputs:
  out: stdout
