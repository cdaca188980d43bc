package gate

total := t if {
	t := sum(input.xs)
}
