"""Small applications ades ships for its example CWL packages (run as `python -m ades.apps.<name>`)."""
