package gate

deny[msg] {
	msg := "no"
}
