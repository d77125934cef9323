require "fileinto";
fileinto "Work";
fileinto "Work";
