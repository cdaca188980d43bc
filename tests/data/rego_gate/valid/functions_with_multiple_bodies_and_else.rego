package gate

severity(v) := "critical" if {
	v.score >= 9
} else := "high" if {
	v.score >= 7
} else := "low"

weight("critical") := 10

weight("high") := 5

weight("low") := 1

total := sum([weight(severity(v)) | some v in input.vulns])
