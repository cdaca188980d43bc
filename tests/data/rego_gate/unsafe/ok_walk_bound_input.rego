package gate

paths contains p if {
	walk(input, [p, v])
	v == "secret"
}
