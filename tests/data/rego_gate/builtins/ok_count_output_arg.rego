package gate

allow if {
	count([1], n)
	n == 1
}
