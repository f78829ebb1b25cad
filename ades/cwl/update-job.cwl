#!/usr/bin/env cwl-runner
# Publishes one status update for the running ades job. ades adds one of these steps at the start and at the
# end of every deployed workflow; authors may `run:` it between their own steps for finer progress. The job id
# and the sink come from the workflow's inputs `ades_job_id` and `ades_sink`, which ades fills in.
cwlVersion: v1.2
class: CommandLineTool
id: update-job
label: Update Job
doc: |
  Publish a StatusUpdate (job id, status, optional progress, message and outputs) to the configured sink:
  the SNS status topic (topic ARN, region and endpoint given in `sink`) or, embedded, Elasticsearch.
baseCommand: [ades-update-job]
inputs:
  job_id:
    type: string
    inputBinding: {prefix: --job-id}
  status:
    type: string
    inputBinding: {prefix: --status}
  progress:
    type: int?
    inputBinding: {prefix: --progress}
  message:
    type: string?
    inputBinding: {prefix: --message}
  outputs:
    type: string?
    doc: JSON object mapping output ids to URLs.
    inputBinding: {prefix: --outputs}
  sink:
    type: string
    doc: 'JSON object: {"topic_arn", "region", "endpoint_url"} or {"es_url", "index_prefix"}.'
    inputBinding: {prefix: --sink}
outputs:
  receipt:
    type: stdout
stdout: update-job.json
