"""`legaldoc monitor`: the full-screen Textual dashboard. Screens only: data and actions come from
`legaldoc.services.monitor`."""
