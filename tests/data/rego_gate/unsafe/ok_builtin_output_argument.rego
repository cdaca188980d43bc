package gate

allow if {
	count(input.users, n)
	n > 1
}
