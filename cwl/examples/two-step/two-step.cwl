#!/usr/bin/env cwl-runner
# A two-step application package in the OGC 20-089 shape: a $graph holding the Workflow (its id is the process id)
# and the CommandLineTools it runs. Step 1 writes the message, step 2 upper-cases it.
cwlVersion: v1.2
$namespaces:
  s: https://schema.org/
s:softwareVersion: 1.2.0
s:keywords: [example, text]
$graph:
  - class: Workflow
    id: two-step
    label: Shout
    doc: Writes a message to a file, then upper-cases it.
    inputs:
      message:
        type: string
        label: Message
        doc: The text to shout.
    outputs:
      shouted:
        type: File
        outputSource: upper/upper
    steps:
      write:
        run: "#write-text"
        in: {text: message}
        out: [written]
      upper:
        run: "#upper-case"
        in: {source: write/written}
        out: [upper]

  - class: CommandLineTool
    id: write-text
    baseCommand: [printf, "%s\\n"]
    inputs:
      text: {type: string, inputBinding: {position: 1}}
    outputs:
      written: {type: stdout}
    stdout: written.txt

  - class: CommandLineTool
    id: upper-case
    baseCommand: [tr, "[:lower:]", "[:upper:]"]
    inputs:
      source: File
    stdin: $(inputs.source.path)
    outputs:
      upper: {type: stdout}
    stdout: upper.txt
