require ["vacation", "vacation-seconds"];
vacation :seconds 1000000 "x";
