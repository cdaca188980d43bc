package gate

allow if {
	count(xs) > 0
}
