package gate

allow if {
	upper(fmt(input.name)) == "X"
}
