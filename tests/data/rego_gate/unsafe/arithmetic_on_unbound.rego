package gate

total := a + 1 if {
	input.ok
}
