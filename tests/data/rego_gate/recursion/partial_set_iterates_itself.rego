package gate

names contains n if {
	some n in names
}
