package gate

labels[key] := "set" if {
	input.labels
}
