package gate

deny := {"x"}

deny contains "y" if input.y
