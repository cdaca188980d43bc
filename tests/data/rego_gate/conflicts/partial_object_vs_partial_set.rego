package gate

labels[k] := v if {
	some k, v in input.labels
}

labels contains "x" if input.x
