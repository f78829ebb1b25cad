"""HTTP routes of the ades server, one blueprint module per resource."""
