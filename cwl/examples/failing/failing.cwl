#!/usr/bin/env cwl-runner
# Always fails: prints to stdout, explains on stderr, exits 3. Used to test how failed jobs are reported.
cwlVersion: v1.2
class: CommandLineTool
id: failing
label: Failing
doc: Fails on purpose with a message on stderr.
baseCommand: [sh, -c]
arguments:
  - 'echo "starting the failing tool"; echo "failing on purpose: no input data ($0)" >&2; exit 3'
  - $(inputs.reason)
inputs:
  reason: {type: string, default: "test"}
outputs:
  out: stdout
