package gate

deny contains "a" if input.a

deny contains "b" if input.b

deny contains msg if {
	some msg in input.messages
}
