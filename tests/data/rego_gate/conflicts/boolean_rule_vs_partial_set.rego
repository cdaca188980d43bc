package gate

deny if input.bad

deny contains "x" if input.worse
