package gate

allow if {
	some x in
}
