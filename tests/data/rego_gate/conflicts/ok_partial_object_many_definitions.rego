package gate

labels["team"] := input.team

labels[k] := v if {
	some k, v in input.extra
}
