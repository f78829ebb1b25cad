#!/usr/bin/env cwl-runner
# The built-in `echo` process: writes its message to a file. Small on purpose, so that timing it measures ades.
# Its optional inputs are there for OGC clients and the OGC test suite, which look for an array, a bounding box, a
# value of mixed type (one of several types) and a pause: each given one comes back as the output of the same kind.
cwlVersion: v1.2
class: CommandLineTool
id: echo
label: Echo
doc: Writes the message to a text file (and, through stderr, to the job log); echoes the other inputs back.
$namespaces:
  s: https://schema.org/
  iana: https://www.iana.org/assignments/media-types/
s:softwareVersion: 1.0.0
s:keywords: [test, echo]
baseCommand: [sh, -c]
arguments:
  # tee: the message lands in the output file and in the job log, where people look first
  - 'if [ -n "$1" ]; then sleep "$1"; fi; printf "%s\n" "$0" | tee out.txt >&2'
  - $(inputs.message)
inputs:
  message:
    type: string
    label: Message
    doc: The text to write.
  numbers:
    type: int[]?
    label: Numbers
    doc: Any integers; they come back as `numbers_echo`.
  area:
    type:
      - "null"
      - type: record
        name: BoundingBox
        fields:
          bbox: {type: "double[]", doc: "minx, miny, maxx, maxy (or 6 numbers, with heights)"}
          crs: {type: string?, doc: "the CRS URI (default OGC CRS84)"}
    label: Area
    doc: A bounding box; it comes back as `area_echo`.
  choice:
    type: ["null", string, int]
    label: Choice
    doc: A text or an integer; it comes back as `choice_echo`.
  pause:
    type: int?
    label: Pause
    doc: Seconds to wait before writing (so a client can see the job running).
    inputBinding: {position: 1}
outputs:
  out:
    type: File
    format: iana:text/plain
    outputBinding: {glob: out.txt}
  numbers_echo:
    type: int[]?
    outputBinding: {outputEval: $(inputs.numbers)}
  area_echo:
    type:
      - "null"
      - type: record
        name: BoundingBoxEcho
        fields:
          bbox: double[]
          crs: string?
    outputBinding: {outputEval: $(inputs.area)}
  choice_echo:
    type: ["null", string, int]
    outputBinding: {outputEval: $(inputs.choice)}
