#!/usr/bin/env cwl-runner
# A workflow that reports its own progress half-way. ades fills in `ades_job_id` and `ades_sink`, and adds the
# start and finish status updates itself; the author only adds the steps in between.
cwlVersion: v1.2
class: Workflow
id: progress
label: Progress
doc: Writes a message, reports 50 % with a message, then upper-cases the text.
$namespaces:
  s: https://schema.org/
s:softwareVersion: 1.0.0
inputs:
  message: string
  ades_job_id: string
  ades_sink: string
outputs:
  result:
    type: File
    outputSource: upper/upper
steps:
  write:
    run:
      class: CommandLineTool
      baseCommand: [printf, "%s\\n"]
      inputs:
        text: {type: string, inputBinding: {position: 1}}
      outputs:
        written: {type: stdout}
      stdout: written.txt
    in: {text: message}
    out: [written]
  report:
    run: ../../update-job.cwl
    in:
      job_id: ades_job_id
      sink: ades_sink
      status: {default: running}
      progress: {default: 50}
      message: {default: "half-way: the text is written"}
      # depending on write/written makes the report come after the first step
      after: write/written
    out: [receipt]
  upper:
    run:
      class: CommandLineTool
      baseCommand: [tr, "[:lower:]", "[:upper:]"]
      inputs:
        source: File
        # only here so that this step waits for the progress report
        after: File?
      stdin: $(inputs.source.path)
      outputs:
        upper: {type: stdout}
      stdout: upper.txt
    in:
      source: write/written
      after: report/receipt
    out: [upper]
