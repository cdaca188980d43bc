package gate

allow if {
	some v in [false, input.ok]
	v == true
}
