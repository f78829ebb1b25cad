#!/usr/bin/env cwl-runner
# The built-in `echo` process: writes its message to a file. Small on purpose, so that timing it measures ades.
cwlVersion: v1.2
class: CommandLineTool
id: echo
label: Echo
doc: Writes the message to a text file (and, through stderr, to the job log).
$namespaces:
  s: https://schema.org/
  iana: https://www.iana.org/assignments/media-types/
s:softwareVersion: 1.0.0
s:keywords: [test, echo]
baseCommand: [sh, -c]
arguments:
  # tee: the message lands in the output file and in the job log, where people look first
  - 'printf "%s\n" "$0" | tee out.txt >&2'
  - $(inputs.message)
inputs:
  message:
    type: string
    label: Message
    doc: The text to write.
outputs:
  out:
    type: File
    format: iana:text/plain
    outputBinding: {glob: out.txt}
