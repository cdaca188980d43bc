package gate

user := name if {
	input.user != ""
}
