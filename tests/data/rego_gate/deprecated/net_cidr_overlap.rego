package gate

allow if net.cidr_overlap("10.0.0.0/8", input.ip)
