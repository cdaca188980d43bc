package gate

flag if input.on

items contains x if {
	some x in flag
}
