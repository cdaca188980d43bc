package gate

limits[name] := 1 if {
	some name in input.names
}

limits.cpu.max := 2
