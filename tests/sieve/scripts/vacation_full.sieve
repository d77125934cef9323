require "vacation";
vacation :days 14 :subject "Out of office" :from "rcpt@example.com" :addresses ["bob@example.com", "rcpt@example.org"] :handle "ooo-2026" "I am on holiday.
Back in two weeks.";
